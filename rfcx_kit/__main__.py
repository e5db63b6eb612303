"""`python -m rfcx_kit` = the `rfcx-kit` command."""

from rfcx_kit.app.cli import main

main()
