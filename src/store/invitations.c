/* invitations.c — being built. */
