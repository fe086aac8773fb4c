"""The HIL suite loads the rig plugin: --board, --rig and the rig fixtures."""

pytest_plugins = ["hil.plugin"]
