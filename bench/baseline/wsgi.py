import predictor as myapp

# This is just a simple wrapper for gunicorn to find the app, as in the example.
app = myapp.app
