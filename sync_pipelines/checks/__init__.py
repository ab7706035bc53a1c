"""Asset checks of an integration as plain functions over the store: error rate, its trend, p95
latency, freshness, failure streak, dead letters, inventory volume and data quality. The Dagster
side (`defs/integration_checks.py`) only runs them and reports what they say."""
