"""google-cloud-resource-manager (Cloud Resource Manager API v3) against the emulator: projects
by id and by number, their organization, and the errors Google answers."""

import unittest

from google.api_core import exceptions
from google.cloud import resourcemanager_v3

from harness import PROJECT, client, main, status_of


class Projects(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.projects = client(resourcemanager_v3.ProjectsClient)
        cls.organizations = client(resourcemanager_v3.OrganizationsClient)

    def test_project_by_id_and_by_number(self):
        by_id = self.projects.get_project(name=f"projects/{PROJECT}")
        self.assertEqual(by_id.project_id, PROJECT)
        self.assertEqual(by_id.state, resourcemanager_v3.Project.State.ACTIVE)
        number = by_id.name.split("/")[1]
        self.assertTrue(number.isdigit(), by_id.name)
        self.assertTrue(by_id.parent.startswith("organizations/"), by_id.parent)
        by_number = self.projects.get_project(name=by_id.name)
        self.assertEqual(by_number.project_id, PROJECT)
        self.assertEqual(by_number.create_time, by_id.create_time)

    def test_organization_of_a_project(self):
        project = self.projects.get_project(name=f"projects/{PROJECT}")
        organization = self.organizations.get_organization(name=project.parent)
        self.assertEqual(organization.name, project.parent)
        self.assertEqual(organization.state, resourcemanager_v3.Organization.State.ACTIVE)
        self.assertTrue(organization.display_name)

    def test_unknown_number_is_permission_denied(self):
        # Google does not say whether a project exists to whoever may not see it: 403.
        with self.assertRaises(exceptions.Forbidden) as caught:
            self.projects.get_project(name="projects/999999999999")
        self.assertEqual(status_of(caught.exception), "PERMISSION_DENIED")

    def test_invalid_id_is_rejected(self):
        with self.assertRaises(exceptions.GoogleAPICallError) as caught:
            self.projects.get_project(name="projects/Not_A_Project")
        self.assertIn(caught.exception.code, (400, 403))


if __name__ == "__main__":
    main()
