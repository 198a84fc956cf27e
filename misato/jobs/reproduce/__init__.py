"""One-command regeneration of the paper's tables (`misato reproduce TABLE`); presets are JSON files here."""
