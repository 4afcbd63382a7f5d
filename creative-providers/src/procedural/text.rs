//! The stand-in's copy: an opener, the prompt's subject, two adjectives and a
//! closer, picked by the seed from a small phrasebook in the language the prompt
//! asks for, so text steps, chaining and text gates run offline.

use super::rng_for;

/// The stand-in's phrasebook for one language.
struct Phrases {
    openers: &'static [&'static str],
    adjectives: &'static [&'static str],
    closers: &'static [&'static str],
    /// The pattern: opener, subject, adjective, adjective, closer.
    and: &'static str,
    colon: &'static str,
}

const ENGLISH: Phrases = Phrases {
    openers: &[
        "Meet",
        "Discover",
        "Say hello to",
        "Introducing",
        "Here is",
        "Make room for",
    ],
    adjectives: &[
        "bold", "bright", "quiet", "clever", "fresh", "timeless", "playful", "honest", "crisp", "warm",
    ],
    closers: &[
        "Made to be used every day.",
        "Small details, big difference.",
        "Designed with care.",
        "Ready when you are.",
        "Try it today.",
        "Built to last.",
    ],
    and: "and",
    colon: ":",
};

const FRENCH: Phrases = Phrases {
    openers: &["Découvrez", "Voici", "Place à", "Nouveau :", "Faites connaissance avec"],
    adjectives: &[
        "élégant",
        "lumineux",
        "malin",
        "intemporel",
        "audacieux",
        "pratique",
        "chaleureux",
        "soigné",
    ],
    closers: &[
        "Conçu pour durer.",
        "Pensé pour chaque jour.",
        "Les détails font la différence.",
        "Essayez-le dès aujourd'hui.",
        "Fait avec soin.",
    ],
    and: "et",
    colon: " :",
};

const GERMAN: Phrases = Phrases {
    openers: &["Entdecken Sie", "Das ist", "Hallo,", "Neu:", "Darf ich vorstellen:"],
    adjectives: &["mutig", "hell", "klug", "frisch", "zeitlos", "ehrlich", "warm", "klar"],
    closers: &[
        "Gemacht für jeden Tag.",
        "Kleine Details, großer Unterschied.",
        "Mit Sorgfalt gestaltet.",
        "Probieren Sie es heute.",
    ],
    and: "und",
    colon: ":",
};

/// The language a prompt asks for ("..., in French"), English by default.
fn phrases_for(prompt: &str) -> &'static Phrases {
    let p = prompt.to_lowercase();
    if p.contains("in french") || p.contains("en français") {
        &FRENCH
    } else if p.contains("in german") || p.contains("auf deutsch") {
        &GERMAN
    } else {
        &ENGLISH
    }
}

/// Deterministic copy from the prompt: an opener, the prompt's subject, two
/// adjectives and a closer, chosen by the seed, in the language the prompt asks
/// for (English, French or German).
pub(super) fn compose_text(prompt: &str, seed: u64, max_tokens: Option<u32>) -> String {
    let mut rng = rng_for(prompt, seed, "text");
    let ph = phrases_for(prompt);
    // "a tagline for a ceramic mug, in French" is about "a ceramic mug".
    let about = prompt.rsplit_once(" for ").map_or(prompt, |(_, s)| s);
    let about = about.split([',', '.', ';']).next().unwrap_or(about);
    let subject: String = about.split_whitespace().take(12).collect::<Vec<_>>().join(" ");
    let subject = if subject.is_empty() {
        "something new".to_string()
    } else {
        subject
    };
    let n = ph.adjectives.len();
    let i1 = rng.usize(0..n);
    // A second adjective, never the first again.
    let i2 = (i1 + 1 + rng.usize(0..n - 1)) % n;
    let text = format!(
        "{} {}{} {} {} {}. {}",
        ph.openers[rng.usize(0..ph.openers.len())],
        subject,
        ph.colon,
        ph.adjectives[i1],
        ph.and,
        ph.adjectives[i2],
        ph.closers[rng.usize(0..ph.closers.len())]
    );
    match max_tokens {
        // About four characters per token, as with real tokenizers on English.
        Some(t) => text.chars().take((t as usize).saturating_mul(4).max(1)).collect(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use creative_core::{CallCtx, Provider, Request, Task};

    use super::super::Procedural;
    use super::*;

    #[tokio::test]
    async fn text_is_deterministic_and_mentions_the_prompt() {
        let p = Procedural::new("procedural");
        let mut req = Request::new(Task::Text, "a short tagline for the travel mug, in French");
        req.params.seed = Some(3);
        let a = p.generate(&req, &CallCtx::detached()).await.unwrap();
        let b = p.generate(&req, &CallCtx::detached()).await.unwrap();
        let t = a.artifacts[0].text().unwrap().to_string();
        assert_eq!(Some(t.as_str()), b.artifacts[0].text());
        assert!(t.contains("the travel mug :"), "{t}");
        assert!(!t.contains("tagline"), "{t}");
        let en = Request::new(Task::Text, "a short tagline for the travel mug");
        let en = p.generate(&en, &CallCtx::detached()).await.unwrap();
        assert!(
            ENGLISH
                .closers
                .iter()
                .any(|c| en.artifacts[0].text().unwrap().ends_with(c)),
            "{:?}",
            en.artifacts[0].text()
        );
        assert!(FRENCH.closers.iter().any(|c| t.ends_with(c)), "asked in French: {t}");
        assert!(a.usage.cost_usd > 0.0);
    }
}
