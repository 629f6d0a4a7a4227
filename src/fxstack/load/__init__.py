"""Getting built images into Docker: through a registry on loopback (only missing layers), or `docker load`."""
