"""The hub side: JupyterHub authenticator, spawner and settings for NeuroLang Gallery."""
