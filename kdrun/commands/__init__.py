"""Commands besides ``train``: each module is one ``kdrun <command>``."""
