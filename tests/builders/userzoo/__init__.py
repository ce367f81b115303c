"""A user's own model package, outside deepshrink's zoo: builders the tests import by name."""
