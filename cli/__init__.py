"""The ``reprtools`` command line: click commands, each parsing its options and calling one library function.

Installed as the import package ``reprtools_cli`` (the folder is ``cli/``) so it cannot collide with other
packages' ``cli`` modules.
"""
