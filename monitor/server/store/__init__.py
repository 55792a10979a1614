"""Storage: tables, migrations, partitions, bulk writers and window readers."""
