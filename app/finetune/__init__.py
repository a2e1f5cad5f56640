"""Fine-tuning: settings, datasets, the plan and estimate, typed runs, teach."""
