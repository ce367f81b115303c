"""Jobs that tie the stages together: train, evaluate, import, benchmark, demo (and, in later
issues, recipes that run any sequence of stages). The CLI calls these and only prints."""
