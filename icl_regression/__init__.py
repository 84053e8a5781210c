"""icl_regression: pretraining task diversity and in-context learning of linear regression, in JAX."""

__version__ = "0.1.0"
