"""Integration monitoring: thresholds, windowed figures and health, shared by the asset checks,
alerts, the health endpoint, reports and metrics so they all agree on what "unhealthy" means."""
