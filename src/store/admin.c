/* admin.c — being built. */
