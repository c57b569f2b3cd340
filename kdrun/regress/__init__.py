"""``kdrun regress``: run the recipes and check each against the metrics it must reach."""

from kdrun.regress.bounds import Expectation
from kdrun.regress.recipe import Recipe, RecipeError, load_recipe

__all__ = ["Expectation", "Recipe", "RecipeError", "load_recipe"]
