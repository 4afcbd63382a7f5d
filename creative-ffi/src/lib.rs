//! The C ABI of `creative` (see `include/creative.h`).
