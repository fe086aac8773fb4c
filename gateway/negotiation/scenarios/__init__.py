"""Scenario files for `gridpact negotiate --scenario`; a package only so that wheels carry the files."""
