"""``python -m assistant.app add-user NAME``: manage the browser app's logins (see :mod:`assistant.app.logins`)."""

import sys

from assistant.app.logins import main

sys.exit(main())
