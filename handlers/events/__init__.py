"""Events (活动): staff create, edit and cancel them; members sign up and withdraw."""
