"""The backend: settings, state, the service and its jobs (connecting, the seed batch, on-demand regions, the training run), the scheduler, job processes, the HTTP app and the team lead's page."""
