"""The one base class of failures a user can cause and fix.

Entry points catch ``UserError`` and print its message as one line (``cli.run_or_fail``);
anything else is a bug and keeps its traceback. Each concept defines its own subclass
next to the code that raises it (``ConfigError``, ``ImageError``, ``CheckpointError``...).
"""


class UserError(Exception):
  """A failure with a one-line message that says what is wrong and what to do."""
