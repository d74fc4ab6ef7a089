/* mail.c — being built. */
