"""Beyond one machine: images pushed by digest to an OCI registry, the stack model rendered for
Docker Swarm (`docker stack deploy`) and for Kubernetes. Nothing here schedules anything: the
engines do."""
