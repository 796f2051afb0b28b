"""The outage demo: technicians on simulated devices against a real relay."""
