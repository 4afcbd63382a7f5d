//! Advice on a finished run (filled in by the advise step).
