"""Frame sequences: droplets linked through time, their growth and the heat it carries."""
