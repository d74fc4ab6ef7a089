/* outbox.c — being built. */
