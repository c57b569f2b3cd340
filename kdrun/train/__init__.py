"""The ``kdrun train`` task: prepare (every rejection), phases (teachers, baselines), pipeline, evaluate."""
