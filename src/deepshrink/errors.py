"""The one exception type for user mistakes.

Library code raises :class:`UserError` for anything a user can fix (a missing file, a
malformed folder, an unknown model name, an out-of-range number). The CLI turns it into
exit code 2 and one line on stderr; everything else is a bug and keeps its traceback.
"""


class UserError(Exception):
    """A problem with the user's input, explained in one line."""
