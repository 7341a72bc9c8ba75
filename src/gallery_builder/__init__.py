"""The builder side: turns git repositories into images with repo2docker."""
