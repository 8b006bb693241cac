"""Network front-ends that turn connections into call legs."""
