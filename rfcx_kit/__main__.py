"""`python -m rfcx_kit` = the `rfcx-kit` command."""

from rfcx_kit.cli import main

main()
