from locust import HttpUser, task


class Browse(HttpUser):
    """A fixture: a locustfile that exists."""

    @task
    def browse(self) -> None:
        self.client.get("/")
