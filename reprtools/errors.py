"""The one exception type for bad input.

Library functions raise :class:`ReprtoolsError` when the *user* gave something wrong (an unknown method, a
missing file, a ratio outside [0, 1], ...).  The message is one line that says what is wrong and how to fix it.
The CLI prints it as ``reprtools: error: <message>`` and exits non-zero, without a traceback.  Anything else
that escapes is a bug in reprtools and keeps its traceback.
"""


class ReprtoolsError(Exception):
    """Bad input from the user: the message says what is wrong and how to fix it, in one line."""
