/* apikeys.c — being built. */
