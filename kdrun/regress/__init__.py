"""``kdrun regress``: run the recipes and check each against the metrics it must reach."""

from kdrun.regress.recipe import Expectation, Recipe, RecipeError, load_recipe

__all__ = ["Expectation", "Recipe", "RecipeError", "load_recipe"]
