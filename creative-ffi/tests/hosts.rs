//! The real hosts, built and run by the test suite: the C11 host (under valgrind,
//! and linked statically), the C++17 host through `creative.hpp`, the Python
//! ctypes tool, the CMake package and the pkg-config file, plus the exported
//! symbol check.
//!
//! Tools these tests need (the project's CI installs them): gcc, g++, python3,
//! pkg-config, valgrind, cmake, nm. A missing tool fails the test with its name;
//! nothing is skipped silently.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `target/<profile>`: this test binary lives in `target/<profile>/deps`.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    exe.parent()
        .and_then(Path::parent)
        .expect("target/<profile>")
        .to_path_buf()
}

fn tool(name: &str) -> Command {
    if which(name).is_none() {
        panic!(
            "`{name}` is not installed: the host tests need it (apt-get install {}); they do not skip",
            apt_package(name)
        );
    }
    Command::new(name)
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| std::env::split_paths(&p).map(|d| d.join(name)).find(|f| f.is_file()))
}

fn apt_package(tool: &str) -> &str {
    match tool {
        "gcc" => "gcc",
        "g++" => "g++",
        "python3" => "python3",
        "pkg-config" => "pkg-config",
        "valgrind" => "valgrind",
        "cmake" => "cmake",
        "nm" => "binutils",
        other => other,
    }
}

fn run(mut cmd: Command, what: &str) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    if !out.status.success() {
        panic!(
            "{what} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

/// The folder holding the shared and static libraries of this very build.
///
/// `cargo test` builds every crate type of the library into `target/<profile>/deps`
/// (fresh for this test run) but copies them up to `target/<profile>` only on
/// `cargo build`, so the copies there may be stale: read `deps` first, and build
/// explicitly only when it lacks them.
fn libs() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let has_both = |d: &Path| d.join("libcreative_ffi.so").is_file() && d.join("libcreative_ffi.a").is_file();
        let deps = profile_dir().join("deps");
        if has_both(&deps) {
            return deps;
        }
        let dir = profile_dir();
        let mut cmd = Command::new(env!("CARGO"));
        cmd.args(["build", "-p", "creative-ffi", "--lib"]);
        cmd.env("CARGO_TARGET_DIR", dir.parent().expect("target dir"));
        if dir.file_name().and_then(|n| n.to_str()) == Some("release") {
            cmd.arg("--release");
        }
        run(cmd, "cargo build -p creative-ffi");
        assert!(has_both(&dir), "no libcreative_ffi in {}", dir.display());
        dir
    })
}

/// A scratch folder per test under the target dir (kept for inspection).
fn scratch(name: &str) -> PathBuf {
    let d = profile_dir().join("creative-ffi-hosts").join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("scratch dir");
    d
}

/// Install headers, libraries, pkg-config and CMake files into one prefix with the
/// project's own install script, shared by every host test: a debug build of the
/// libraries is large, and one copy per test once filled a CI disk.
fn install() -> &'static Path {
    static PREFIX: OnceLock<PathBuf> = OnceLock::new();
    PREFIX.get_or_init(|| {
        let prefix = scratch("prefix");
        let mut cmd = tool("bash");
        cmd.arg(repo().join("creative-ffi/scripts/install.sh"))
            .arg(libs())
            .arg(&prefix);
        run(cmd, "install.sh");
        prefix
    })
}

fn pkg_config(prefix: &Path, args: &[&str]) -> Vec<String> {
    let mut cmd = tool("pkg-config");
    cmd.args(args).arg("creative");
    cmd.env("PKG_CONFIG_PATH", prefix.join("lib/pkgconfig"));
    let out = run(cmd, "pkg-config");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

fn assert_all_passed(out: &Output, what: &str) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().rev().find(|l| l.contains(" passed, ")).unwrap_or("");
    assert!(
        last.ends_with(" 0 failed") && !last.starts_with("0 passed"),
        "{what}: expected a clean `N passed, 0 failed` line, got `{last}`\n{stdout}"
    );
}

/// Compile the C host against the installed shared library through pkg-config;
/// returns the executable and the test's scratch folder.
fn build_c_host(name: &str) -> (PathBuf, PathBuf) {
    let prefix = install();
    let dir = scratch(name);
    let exe = dir.join("host");
    let mut cmd = tool("gcc");
    cmd.args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-pedantic", "-g", "-O1"])
        .arg(repo().join("examples/c/host.c"))
        .arg("-o")
        .arg(&exe)
        .args(pkg_config(prefix, &["--cflags", "--libs"]))
        .arg(format!("-Wl,-rpath,{}", prefix.join("lib").display()));
    run(cmd, "gcc examples/c/host.c");
    (exe, dir)
}

#[test]
fn c_host_runs_clean_under_valgrind() {
    let (exe, dir) = build_c_host("c-valgrind");
    let out_dir = dir.join("out");
    let mut cmd = tool("valgrind");
    cmd.args([
        "--leak-check=full",
        "--errors-for-leak-kinds=definite,possible",
        "--show-leak-kinds=definite,possible",
        "--error-exitcode=1",
        "--quiet",
    ])
    .arg(format!(
        "--suppressions={}",
        repo().join("creative-ffi/tests/valgrind.supp").display()
    ))
    .arg(&exe)
    .arg(&out_dir);
    let out = run(cmd, "valgrind examples/c/host");
    assert_all_passed(&out, "C host under valgrind");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("definitely lost"),
        "valgrind reported a leak:\n{stderr}"
    );
    assert!(
        !stderr.contains("Invalid read") && !stderr.contains("Invalid write"),
        "{stderr}"
    );
}

#[test]
fn c_host_links_the_static_library() {
    let prefix = install();
    let dir = scratch("c-static");
    let exe = dir.join("host_static");
    let mut cmd = tool("gcc");
    cmd.args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-O1"])
        .arg(repo().join("examples/c/host.c"))
        .arg(format!("-I{}", prefix.join("include").display()))
        .arg("-o")
        .arg(&exe)
        .arg(prefix.join("lib/libcreative_ffi.a"))
        .args(["-lpthread", "-ldl", "-lm"]);
    run(cmd, "gcc examples/c/host.c (static)");
    let mut host = Command::new(&exe);
    host.arg(dir.join("out"));
    let out = run(host, "static C host");
    assert_all_passed(&out, "static C host");
}

#[test]
fn cpp_host_uses_the_raii_wrapper() {
    let prefix = install();
    let dir = scratch("cpp");
    let exe = dir.join("host_cpp");
    let mut cmd = tool("g++");
    cmd.args(["-std=c++17", "-Wall", "-Wextra", "-Werror", "-O1"])
        .arg(repo().join("examples/cpp/host.cpp"))
        .arg("-o")
        .arg(&exe)
        .args(pkg_config(prefix, &["--cflags", "--libs"]))
        .arg(format!("-Wl,-rpath,{}", prefix.join("lib").display()));
    run(cmd, "g++ examples/cpp/host.cpp");
    let mut host = Command::new(&exe);
    host.arg(dir.join("out"));
    let out = run(host, "C++ host");
    assert_all_passed(&out, "C++ host");
}

#[test]
fn python_tool_runs_through_ctypes() {
    let so = libs().join("libcreative_ffi.so");
    let out_dir = scratch("python");
    let mut cmd = tool("python3");
    cmd.arg(repo().join("examples/python/blender_tool.py"))
        .arg(&out_dir)
        .env("CREATIVE_LIBRARY", &so);
    let out = run(cmd, "python3 examples/python/blender_tool.py");
    assert_all_passed(&out, "Python tool");
}

#[test]
fn cmake_package_builds_the_cpp_and_static_c_hosts() {
    let prefix = install();
    let build = scratch("cmake").join("build");
    let mut cmd = tool("cmake");
    cmd.arg("-S")
        .arg(repo().join("examples/cmake"))
        .arg("-B")
        .arg(&build)
        .arg(format!("-DCMAKE_PREFIX_PATH={}", prefix.display()))
        .arg(format!("-DCMAKE_BUILD_RPATH={}", prefix.join("lib").display()));
    run(cmd, "cmake configure examples/cmake");
    let mut cmd = tool("cmake");
    cmd.arg("--build").arg(&build);
    run(cmd, "cmake --build");
    for exe in ["host_cpp", "host_c_static"] {
        let mut host = Command::new(build.join(exe));
        host.arg(build.join(format!("out-{exe}")));
        let out = run(host, exe);
        assert_all_passed(&out, exe);
    }
}

#[test]
fn pkg_config_file_is_relocatable_and_versioned() {
    let prefix = install();
    let cflags = pkg_config(prefix, &["--cflags"]);
    assert!(
        cflags
            .iter()
            .any(|f| f.starts_with("-I") && Path::new(&f[2..]).join("creative.h").is_file()),
        "{cflags:?}"
    );
    let version = pkg_config(prefix, &["--modversion"]);
    assert_eq!(version, [env!("CARGO_PKG_VERSION")]);
}

#[test]
fn exported_symbols_are_all_prefixed() {
    let so = libs().join("libcreative_ffi.so");
    let mut cmd = tool("nm");
    cmd.args(["-D", "--defined-only", "--format=posix"]).arg(&so);
    let out = run(cmd, "nm -D");
    let text = String::from_utf8_lossy(&out.stdout);
    let names: Vec<&str> = text.lines().filter_map(|l| l.split_whitespace().next()).collect();
    assert!(names.contains(&"creative_run_start"), "{names:?}");
    let foreign: Vec<&&str> = names.iter().filter(|n| !n.starts_with("creative_")).collect();
    assert!(foreign.is_empty(), "symbols without the creative_ prefix: {foreign:?}");
    // Every function the header declares is exported.
    let header = std::fs::read_to_string(repo().join("include/creative.h")).expect("header");
    let mut declared = 0;
    for line in header.lines() {
        let t = line.trim_start();
        if t.starts_with("typedef") || t.starts_with('*') || t.starts_with("/*") || t.starts_with('#') {
            continue;
        }
        if let Some((before, _)) = t.split_once('(') {
            let name = before.split_whitespace().last().unwrap_or("").trim_start_matches('*');
            if name.starts_with("creative_") {
                declared += 1;
                assert!(
                    names.contains(&name),
                    "header declares `{name}` but the library does not export it"
                );
            }
        }
    }
    assert!(declared >= 30, "found only {declared} functions in the header");
    assert_eq!(
        declared,
        names.len(),
        "the library exports functions the header does not declare"
    );
}
