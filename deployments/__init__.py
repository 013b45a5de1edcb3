"""How Ferry's flows are deployed: prefect.yaml for single resources, plan.py for a plan."""
