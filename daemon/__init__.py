"""cadence: keeps sales 1:1s on the calendar at the right cadence."""

import warnings

# google-api-core warns on import, from a date it holds, that this Python is no longer supported
# by its future releases. The library works; an admin would only see a line of noise on stderr
# of every command, which scripts read as one line per problem.
warnings.filterwarnings(
    "ignore", message="You are using a non-supported Python version", category=FutureWarning
)
