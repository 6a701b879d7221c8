"""What the fleet shows operators: error metrics and outcomes, alert thresholds and their
monitor, health checks, held broker messages, and the error-tracker seam."""
