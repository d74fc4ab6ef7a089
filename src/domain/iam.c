/* iam.c — being built. */
