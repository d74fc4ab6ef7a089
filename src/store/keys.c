/* keys.c — being built. */
