"""The write side: summary builders, the SummaryWriter, and watch()."""
