from locust import FastHttpUser, constant, constant_throughput, task

class Plain(FastHttpUser):
    wait_time = constant(0)

    @task
    def get(self):
        self.client.get("/")
