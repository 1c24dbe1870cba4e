"""HTTP routes, one module per API family; each handler is glue between translate and upstream."""
