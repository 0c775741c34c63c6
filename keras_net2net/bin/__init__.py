"""Command-line programs (absl): net2net-train, -expand, -compare, -evaluate."""
