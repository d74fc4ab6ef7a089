/* tenancy.c — being built. */
