"""The virtual community behind `gridpact simulate`: households, hourly market, tokens, report."""
