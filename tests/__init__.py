# A package, so Hydra overrides can name test helpers as ``tests.helpers.<name>``.
