"""``kdrun tune``: an Optuna study over a search space of ``kdrun train`` keys (``conf/tune/``),
maximising the distilled student's validation top-1 within a budget, with bad trials pruned
after each epoch; the best point is then confirmed on the test split by ``kdrun train``."""
