"""``python -m monitor.server.cli`` is the ``cvmon`` command."""

from monitor.server.cli import main

main()
