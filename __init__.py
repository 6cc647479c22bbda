"""Head2Head++ live head reenactment: prepare, train, export and drive avatars."""
