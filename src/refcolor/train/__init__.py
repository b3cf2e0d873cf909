"""Training: data, losses, discriminator, trainer and the ``refcolor train`` command."""
